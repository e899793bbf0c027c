#!/usr/bin/env bash
# MySQL → MySQL through the service: initial snapshot of existing rows, then a mixed workload
# (multi-statement transactions, key updates, deletes, truncate, NULLs) over a table holding every
# MySQL type (TIME beyond a day and negative, BIT, ENUM, SET, latin1 text), and a table without
# key; create_tables = yes keeps the declared types; both sides end with equal ordered contents,
# compared by compare_rows.py on per-type normal forms. Then the sink connector without server_id:
# accepted, and its writes unmarked. Then (issue #10) a pipeline whose sink is the source server
# under another host name and writes into a database it reads: check --connect refuses it (and a
# table that does not exist), and run stops it before it writes anything; before the first start,
# check --connect names missing source tables and refuses two pipelines writing one sink table
# through two host names of one server.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"
export PGTZ=UTC

my_start src 1
my_start dst 2
MPORT=$(free_port)

my_wide_table src '-12:34:56.789'

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info <<CONF
[connector.msrc]
$(my_connector src 9001)

[connector.mdst]
$(my_connector dst 9002)
create_tables = yes

[pipeline.m2m]
source = msrc
sink = mdst
tables = *
snapshot = initial
CONF

# Normal forms (the same SELECT on both sides): MY_ALL, KINDS_ALL and MY_NOKEY from mylib.sh.

dump_pair() { # TABLE EXPR - ORDER
  my_on src -e "SET time_zone = '+00:00'; SELECT $2 FROM $1 ORDER BY $4" >"$WORK/my.$1" &&
    my_on dst -e "SET time_zone = '+00:00'; SELECT $2 FROM $1 ORDER BY $4" >"$WORK/dst.$1"
}
synced() {
  dump_pair alltypes "$MY_ALL" - id && rows_equal "$KINDS_ALL" "$WORK/my.alltypes" "$WORK/dst.alltypes" &&
    dump_pair nokey "$MY_NOKEY" - "a, b" && rows_equal su "$WORK/my.nokey" "$WORK/dst.nokey"
}

# Before anything ran (dst holds no cdcsync database yet, and a sink's check would make one):
# check --connect names the source tables that do not exist, and refuses two pipelines writing one
# sink table through two host names of one server (a listed table, then tables = *), which the conf
# alone cannot tell; a refused pipeline is not checked further, so dst stays untouched.
check_connect() { # CONF EXPECTED_RC
  local rc=0
  "$CDCSYNC" -c "$1" check --connect >"$WORK/gaps.out" 2>&1 || rc=$?
  [ "$rc" = "$2" ] || fail "check --connect on $1 exited $rc, expected $2: $(cat "$WORK/gaps.out")"
}
write_conf "$WORK/gaps.conf" off <<CONF
[connector.s1]
$(my_connector src 9011)

[connector.d1]
$(my_connector dst 9021)

[pipeline.p1]
source = s1
sink = d1
tables = test.alltypes, test.nope, nodb.t
CONF
check_connect "$WORK/gaps.conf" 1
assert_grep "pipeline p1: source s1 has no tables test.nope, nodb.t — create them, or fix tables in [pipeline.p1]" "$WORK/gaps.out"
grep -q "pipeline p1: s1 → d1 ok" "$WORK/gaps.out" && fail "p1 was called ok: $(cat "$WORK/gaps.out")"
sed -i 's/, test.nope, nodb.t$//' "$WORK/gaps.conf"
cat >>"$WORK/gaps.conf" <<CONF

[connector.s2]
$(my_connector src 9012)

[connector.d2]
type = mysql
host = 127.1 ; dst under another name
port = $MY_dst_PORT
user = cdc
password_file = $WORK/dst.pass
database = test

[pipeline.p2]
source = s2
sink = d2
tables = test.nokey
map = test.nokey -> test.alltypes
CONF
"$CDCSYNC" -c "$WORK/gaps.conf" check >"$WORK/gaps.out" 2>&1 || fail "check without --connect refused: $(cat "$WORK/gaps.out")"
grep -q "both write\|copies every table" "$WORK/gaps.out" && fail "check without --connect claimed to know: $(cat "$WORK/gaps.out")"
DST_WHY=$(my_on dst -e "SELECT CONCAT('MariaDB server ', @@hostname, ':', @@port, ' (datadir ', @@datadir, ', server_id ', @@server_id, ')')")
CLASH="— each would overwrite and delete the other's rows (a truncate, or a snapshot = replace copy, empties the table under the other): give each target table one writer (fix tables or map), or make the two pipelines each other's reverse for sync in both directions"
for step in map star; do
  # star: every table of src (asked from the server), test.alltypes among them, unmapped
  [ $step = map ] || sed -i '/^map = test.nokey/d; s/^tables = test.nokey$/tables = */' "$WORK/gaps.conf"
  check_connect "$WORK/gaps.conf" 1
  assert_grep "pipelines p1 and p2 both write table test.alltypes of one database (sinks d1 and d2: $DST_WHY) $CLASH" "$WORK/gaps.out"
  grep -E "^pipeline p[12]: .* ok$" "$WORK/gaps.out" && fail "a refused pipeline was called ok: $(cat "$WORK/gaps.out")"
done
[ -z "$(my_on dst -e "SHOW DATABASES LIKE 'cdcsync'")" ] || fail "check --connect created the checkpoint database of a refused pipeline"
[ -z "$(my_on dst -e "SHOW TABLES FROM test")" ] || fail "check --connect created tables in dst"

# Enough rows for the snapshot's inserts to go by LOAD DATA LOCAL (mysql_sink_load.c: runs of 256
# rows and more): 100 copies of the three rows, with values LOAD DATA's text format escapes (tab,
# newline, backslash, NUL and every other byte; NULLs and empty strings), values longer than a
# packet of the client library, and bit strings.
my_on src <<'SQL'
SET time_zone = '+00:00';
SET @bytes = (SELECT UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq SEPARATOR '')) FROM seq_0_to_255);
INSERT INTO alltypes SELECT 100000 + s.seq * 10 + a.id, ti, tu, si, su, mi, mu, i, iu, bi, bu, de, fl, db, ch,
  IF(a.id = 1, CONCAT('t\there\\', s.seq, '\n\r\\N'), vc),
  IF(a.id = 1 AND s.seq % 25 = 0, REPEAT('long\t\\\n\0', 8000), tx),
  IF(a.id = 3, @bytes, bl), l1, l1t, bn, IF(a.id = 3, X'5C095C0A5C4E00', vb), d, tm, dt, ts, yr, bt, en, st, js
  FROM alltypes a, seq_1_to_100 s;
SQL
[ "$(my_on src -e "SELECT COUNT(*) FROM alltypes")" = 303 ] || fail "the source does not hold 303 rows"
loads() { my_on dst -e "SHOW GLOBAL STATUS LIKE 'Com_load'" | awk '{print $2}'; }
"$CDCSYNC" -c "$WORK/cdcsync.conf" check >"$WORK/check.out" || fail "check failed: $(cat "$WORK/check.out")"
service_start
wait_for "initial snapshot equal" 20 synced
log "initial snapshot equal: $(cat "$WORK/wait.out" | tr '\n' ' ')"
[ "$(loads)" -gt 0 ] || fail "the snapshot's 303 rows did not go by LOAD DATA LOCAL"
# ...and LOAD DATA stored them itself: a load the sink finds not exact is rolled back to its
# savepoint and sent again as INSERTs, which would hide a wrong escape
undone=$(my_on dst -e "SHOW GLOBAL STATUS LIKE 'Com_rollback_to_savepoint'" | awk '{print $2}')
[ "$undone" = 0 ] || fail "a LOAD DATA of the snapshot was rolled back ($undone) and its rows sent again as INSERTs"

my_on src <<'SQL'
SET time_zone = '+00:00';
-- a multi-statement transaction
BEGIN;
INSERT INTO alltypes (id, vc, de, dt, js) VALUES (10, 'new', 0.0000000001, '2024-06-01 12:00:00.000001', '"s"');
UPDATE alltypes SET vc = CONCAT(vc, ' upd'), iu = iu - 1, fl = -2.25 WHERE id = 1;
DELETE FROM alltypes WHERE id = 3;
INSERT INTO nokey VALUES (3, 'three');
COMMIT;
-- a key update, NULLs over values, values over NULLs
UPDATE alltypes SET id = 20 WHERE id = 10;
UPDATE alltypes SET ti = NULL, bl = NULL, js = NULL, ts = NULL, bt = NULL WHERE id = 1;
UPDATE alltypes SET ti = 7, bl = X'', en = 'b', st = 'y', bt = b'1', tm = '838:59:59', yr = 2000 WHERE id = 2;
-- a duplicate row of a table without key: only one of the two goes
DELETE FROM nokey WHERE a = 1 LIMIT 1;
UPDATE nokey SET b = 'was null' WHERE a = 2;
-- many rows in one statement, then some of them in another transaction
INSERT INTO alltypes (id, i, vc, dt) SELECT seq + 100, seq, CONCAT('row ', seq), '2024-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_300;
BEGIN;
UPDATE alltypes SET i = -i WHERE id BETWEEN 150 AND 160;
DELETE FROM alltypes WHERE id > 390;
COMMIT;
TRUNCATE nokey;
INSERT INTO nokey VALUES (5, 'after truncate'), (5, 'after truncate');
SQL
wait_for "workload equal" 60 synced
log "workload equal: $(cat "$WORK/wait.out" | tr '\n' ' ')"

# The source's BEGIN starts at the transaction, only COMMIT knows its end: the checkpoint in the
# sink must equal the source's binlog end once idle.
read -r bfile bpos < <(my_on src -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
want="$((10#${bfile##*.})):$bpos"
ckpt() { my_on dst -e "SELECT CONCAT(pos_hi, ':', pos_lo) FROM cdcsync.checkpoints WHERE pipeline = 'm2m'" | grep -qx "$want"; }
wait_for "checkpoint at the binlog end ($bfile:$bpos)" 30 ckpt
# the sink's writes carry its own server_id (what a reverse pipeline uses to skip its echo)
ids=$(my_on dst -e "SHOW BINLOG EVENTS" | awk '$3 ~ /_rows/ {print $4}' | sort -u | tr '\n' ' ')
[ "$ids" = "9002 " ] || fail "the sink's row events carry server_id(s) '$ids', not the sink connector's 9002"
service_stop

# A MySQL connector used only as the sink of one-way pipelines needs no server_id: check accepts
# it, the pipeline resumes from its checkpoint, and its writes are unmarked (they carry the sink
# server's own server_id, 2, like an application's).
sed -i '/^\[connector.mdst\]/,/^\[/{/^server_id = /d}' "$WORK/cdcsync.conf"
grep -A8 '^\[connector.mdst\]' "$WORK/cdcsync.conf" | grep -q '^server_id' && fail "server_id still in [connector.mdst]"
"$CDCSYNC" -c "$WORK/cdcsync.conf" check >"$WORK/check2.out" 2>&1 || fail "check refuses a sink without server_id: $(cat "$WORK/check2.out")"
before=$(my_on dst -e "SHOW BINLOG EVENTS" | awk '$3 ~ /_rows/' | wc -l)
service_start
my_on src -e "INSERT INTO alltypes (id, vc) VALUES (500, 'unmarked'); UPDATE alltypes SET vc = 'again' WHERE id = 2"
wait_for "equal after a restart without the sink's server_id" 60 synced
ids=$(my_on dst -e "SHOW BINLOG EVENTS" | awk '$3 ~ /_rows/' | tail -n +$((before + 1)) | awk '{print $4}' | sort -u | tr '\n' ' ')
[ "$ids" = "2 " ] || fail "without server_id the sink's row events carry server_id(s) '$ids', not the server's own 2"
service_stop

# A sink server with local_infile = OFF: the snapshot's rows go as multi-row INSERTs, said once in
# the log, and the copy is equal all the same.
my_on dst -e "SET GLOBAL local_infile = 0; CREATE DATABASE test_off"
n0=$(loads)
cat >"$WORK/off.conf" <<CONF
[service]
state_dir = $WORK/state-off
metrics_listen = off

[connector.msrc]
$(my_connector src 9001)

[connector.mdst]
$(my_connector dst 9002)
create_tables = yes

[pipeline.off]
source = msrc
sink = mdst
tables = test.alltypes
map = test.* -> test_off.*
CONF
chmod 600 "$WORK/off.conf"
my_on src -e "INSERT INTO alltypes (id, vc) SELECT 1000 + seq, CONCAT('t\tx', seq) FROM seq_1_to_300"
service_start "$WORK/off.conf"
off_synced() {
  my_on src -e "SET time_zone = '+00:00'; SELECT $MY_ALL FROM alltypes ORDER BY id" >"$WORK/my.off" &&
    my_on dst -e "SET time_zone = '+00:00'; SELECT $MY_ALL FROM test_off.alltypes ORDER BY id" >"$WORK/dst.off" &&
    rows_equal "$KINDS_ALL" "$WORK/my.off" "$WORK/dst.off"
}
wait_for "a copy into a server with local_infile = OFF equal" 30 off_synced
assert_grep "the server has local_infile = OFF: a snapshot's rows go as multi-row INSERTs" "$WORK/service.log"
[ "$(loads)" = "$n0" ] || fail "LOAD DATA ran on a server with local_infile = OFF"
service_stop
my_on dst -e "SET GLOBAL local_infile = 1"

cat >"$WORK/same.conf" <<CONF
[service]
state_dir = $WORK/state-same
metrics_listen = off

[connector.msrc]
$(my_connector src 9001)

[connector.again]
type = mysql
host = 127.1 ; the source server under another name
port = $MY_src_PORT
user = cdc
password_file = $WORK/src.pass
database = test
server_id = 9003

[pipeline.loop]
source = msrc
sink = again
tables = test.alltypes, test.nope
CONF
chmod 600 "$WORK/same.conf"
"$CDCSYNC" -c "$WORK/same.conf" check >"$WORK/same.out" 2>&1 || fail "check without --connect refused: $(cat "$WORK/same.out")"
rc=0
"$CDCSYNC" -c "$WORK/same.conf" check --connect >"$WORK/same.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "check --connect exited $rc, expected 1: $(cat "$WORK/same.out")"
assert_grep "pipeline loop: source msrc has no table test.nope — create it, or fix tables in [pipeline.loop]" "$WORK/same.out"
assert_grep "pipeline loop: source msrc and sink again are one server (MariaDB server " "$WORK/same.out"
assert_grep "and the pipeline writes into database test, which it reads — it would read its own writes back and apply them again, forever: write into another database (map) or another server" "$WORK/same.out"
[ -z "$(my_on src -e "SHOW DATABASES LIKE 'cdcsync'")" ] || fail "check --connect created the checkpoint database of the refused pipeline"
sed -i 's/, test.nope$//' "$WORK/same.conf"
before=$(my_on src -e "CHECKSUM TABLE test.alltypes EXTENDED")
service_start "$WORK/same.conf"
wait_for "the loop refused at run" 30 grep -qF "[pipeline=loop source=msrc sink=again] pipeline loop: source msrc and sink again are one server (MariaDB server " "$WORK/service.log"
service_stop
[ -z "$(my_on src -e "SHOW DATABASES LIKE 'cdcsync'")" ] || fail "run created the checkpoint database of the refused pipeline"
[ "$(my_on src -e "CHECKSUM TABLE test.alltypes EXTENDED")" = "$before" ] || fail "the refused pipeline wrote into test.alltypes"
finish
