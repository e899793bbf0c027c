#!/usr/bin/env bash
# The MySQL source against a live MariaDB: every event of a workload decoded exactly, resume from
# a commit position, the writer's server_id as origin, and the preflight refusals.
set -euo pipefail
SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
DRIVER="timeout 120 $BUILDDIR/mysql_source_driver"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export MYSQL_PW=cdc-pw
tmp=$(mktemp -d /tmp/cdcsync-mysrc.XXXXXX)
trap '"$SRCDIR/scripts/mysql.sh" stop "$tmp/my"; rm -rf "$tmp"' EXIT
"$SRCDIR/scripts/mysql.sh" start "$tmp/my" $PORT
M() { mariadb --socket="$tmp/my/mysql.sock" -uroot "$@"; }
CDC() { mariadb -h127.0.0.1 -P$PORT -ucdc -p"$MYSQL_PW" "$@"; }
pos() { M -N -e "SHOW MASTER STATUS" | awk '{print $1":"$2}'; }
fail() { echo "FAIL: $*" >&2; exit 1; }

M test -e "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20), n BIGINT UNSIGNED);
           CREATE TABLE b (k1 INT, k2 CHAR(2), ts TIMESTAMP(3) NULL, PRIMARY KEY (k1, k2));
           CREATE TABLE skip (id INT PRIMARY KEY);"
start=$(pos)
M test -e "INSERT INTO a VALUES (1, 'one', 18446744073709551615), (2, NULL, 0);
           INSERT INTO skip VALUES (1);
           SET time_zone = '+00:00';
           BEGIN; INSERT INTO b VALUES (1, 'x', '2024-01-02 03:04:05.678'); UPDATE a SET v = 'uno' WHERE id = 1; COMMIT;"
mid=$(pos)
M -e "FLUSH BINARY LOGS"
# the cdc user writes with its own session server_id: the source must report it as origin
CDC test -e "SET SESSION server_id = 77; BEGIN; UPDATE a SET id = 3 WHERE id = 2; DELETE FROM b WHERE k1 = 1; COMMIT"
M test -e "INSERT INTO a SELECT seq + 100, CONCAT('r', seq), seq FROM seq_1_to_1500; TRUNCATE b"
lastc=$(pos)
M test -e "INSERT INTO skip VALUES (2)"
end=$(pos)

$DRIVER $PORT 1001 test.a,test.b "$start" "$end" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "driver"; }
sed 's/ pos=[^ ]*//' "$tmp/out" | grep -v "v='r[0-9]" >"$tmp/got" || true
cat >"$tmp/want" <<'W'
BEGIN origin=1
I test.a after=[*id='1':integer v='one':text n='18446744073709551615':numeric]
I test.a after=[*id='2':integer v=NULL:text n='0':numeric]
COMMIT origin=1 ts=set
BEGIN origin=1
I test.b after=[*k1='1':integer *k2='x':text ts='2024-01-02 03:04:05.678+00':timestamptz]
U test.a before=[*id='1':integer v='one':text n='18446744073709551615':numeric] after=[*id='1':integer v='uno':text n='18446744073709551615':numeric]
COMMIT origin=1 ts=set
BEGIN origin=77
U test.a before=[*id='2':integer v=NULL:text n='0':numeric] after=[*id='3':integer v=NULL:text n='0':numeric]
D test.b before=[*k1='1':integer *k2='x':text ts='2024-01-02 03:04:05.678+00':timestamptz]
COMMIT origin=77 ts=set
BEGIN origin=1
COMMIT origin=1 ts=set
BEGIN origin=1
T test.b
COMMIT origin=1 ts=set
W
diff -u "$tmp/want" "$tmp/got" || fail "decoded events differ"
# the 1500-row transaction: every row, in order, streamed one by one
grep -o "^I test.a after=\[\*id='[0-9]*'" "$tmp/out" | sed "s/.*id='//; s/'//" | awk 'NR>2' >"$tmp/ids"
seq 101 1600 | diff -q - "$tmp/ids" >/dev/null || fail "bulk insert rows"
grep -q "I test.a after=\[\*id='1600':integer v='r1500':text n='1500':numeric\]" "$tmp/out" || fail "bulk row text"
# the last commit is the binlog end, and positions cross the rotation
lastgot=$(grep '^COMMIT' "$tmp/out" | tail -1 | sed 's/.*pos=binlog\.\([0-9]*\):\([0-9]*\).*/\1:\2/')
[ "$lastgot" = "$(echo "$lastc" | sed 's/.*\.\([0-9]*\):/\1:/')" ] ||
  fail "last commit position is $lastgot, not $lastc (end $end); the driver's last lines: $(tail -5 "$tmp/out" | tr '\n' '|')"

# resume at a commit position: only what follows
$DRIVER $PORT 1001 test.a,test.b "$mid" "$end" >"$tmp/out2" 2>"$tmp/err" || { cat "$tmp/err"; fail "driver resume"; }
[ "$(grep -c '^BEGIN' "$tmp/out2")" = 3 ] || fail "resume: want 3 transactions"
head -1 "$tmp/out2" | grep -qx "BEGIN origin=77" || fail "resume starts at the wrong transaction"

# refusals
M -e "PURGE BINARY LOGS TO '$(echo "$end" | cut -d: -f1)'"
if $DRIVER $PORT 1001 test.a "$start" "$end" >/dev/null 2>"$tmp/err"; then fail "purged start accepted"; fi
grep -q "no longer on the server" "$tmp/err" || { cat "$tmp/err"; fail "purged message"; }
M -e "SET GLOBAL binlog_format = 'STATEMENT'"
if $DRIVER $PORT 1001 test.a now "$end" >/dev/null 2>"$tmp/err"; then fail "STATEMENT accepted"; fi
grep -q "binlog_format is STATEMENT: set binlog_format = ROW" "$tmp/err" || { cat "$tmp/err"; fail "format message"; }
M -e "SET GLOBAL binlog_format = 'ROW'"
if $DRIVER $PORT 1 test.a now "$end" >/dev/null 2>"$tmp/err"; then fail "own server_id accepted"; fi
grep -q "must be set and differ" "$tmp/err" || { cat "$tmp/err"; fail "server_id message"; }
echo "ok"
