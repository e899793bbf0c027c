#!/usr/bin/env bash
# A MySQL/MariaDB sink with binlog = off (as a replica with log_slave_updates = OFF): PostgreSQL →
# MariaDB with create_tables = yes. Without BINLOG ADMIN the sink's session cannot leave the binlog:
# the pipeline stops with an error that says what to grant, and applies nothing; once granted, the
# retry goes through. The copy and a mixed workload then reach the sink, and the server's binlog
# holds none of it (no table map of the table, no CREATE TABLE, no checkpoint row), while a write
# by a plain session does show there. check refuses binlog = off on a connector a pipeline reads.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"

pg_start src
my_start dst 2
MPORT=$(free_port)

psql_on src <<'SQL'
CREATE TABLE nobin (id int PRIMARY KEY, v text);
INSERT INTO nobin SELECT g, 'row ' || g FROM generate_series(1, 500) g;
SQL
my_on dst -e "CREATE TABLE witness (id INT PRIMARY KEY) ENGINE=InnoDB"

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info <<CONF
[connector.psrc]
type = postgres
dsn = $(pg_dsn src)

[connector.mdst]
$(my_connector dst 9002)
create_tables = yes
binlog = off

[pipeline.nobin]
source = psrc
sink = mdst
tables = public.nobin
map = public.* -> test.*
CONF

# check: a pipeline reading this server's binlog would miss what the sink applies.
sed -e '/^\[pipeline.nobin\]/,$d' "$WORK/cdcsync.conf" >"$WORK/bad.conf"
cat >>"$WORK/bad.conf" <<CONF
[pipeline.nobin]
source = psrc
sink = mdst
tables = public.nobin
map = public.* -> test.*

[pipeline.back]
source = mdst
sink = psrc
tables = test.witness
map = test.* -> public.*
CONF
chmod 600 "$WORK/bad.conf"
line=$(grep -n '^binlog = off' "$WORK/bad.conf" | cut -d: -f1)
if "$CDCSYNC" -c "$WORK/bad.conf" check >"$WORK/check.out" 2>&1; then
  fail "check accepted binlog = off on a connector a pipeline reads from: $(cat "$WORK/check.out")"
fi
assert_grep "bad.conf:$line: binlog = off: pipeline back reads this server's binlog, which would then lack what pipeline nobin applies to it" "$WORK/check.out"

service_start
wait_for "the sink refuses for want of BINLOG ADMIN" 60 grep -q "binlog = off, but the session cannot leave the binlog" "$WORK/service.log"
assert_grep "GRANT BINLOG ADMIN" "$WORK/service.log"
[ "$(my_on dst -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'test' AND TABLE_NAME = 'nobin'")" = 0 ] ||
  fail "the sink created its table though it could not leave the binlog"
my_on dst -e "GRANT BINLOG ADMIN ON *.* TO 'cdc'@'127.0.0.1', 'cdc'@'localhost'"
log "granted BINLOG ADMIN; the retry must go through"

synced() {
  [ "$(psql_on src -c "SELECT count(*) || ' ' || coalesce(sum(id), 0) || ' ' || coalesce(sum(length(v)), 0) FROM nobin")" = \
    "$(my_on dst -e "SELECT CONCAT(COUNT(*), ' ', COALESCE(SUM(id), 0), ' ', COALESCE(SUM(LENGTH(v)), 0)) FROM nobin" 2>/dev/null)" ]
}
wait_for "the copy on the sink" 60 synced
psql_on src <<'SQL'
BEGIN;
UPDATE nobin SET v = v || ' updated' WHERE id % 3 = 0;
DELETE FROM nobin WHERE id % 7 = 0;
INSERT INTO nobin SELECT g, 'new ' || g FROM generate_series(501, 700) g;
UPDATE nobin SET id = id + 1000 WHERE id = 1;
COMMIT;
SQL
wait_for "the changes on the sink" 60 synced
my_on dst -e "INSERT INTO witness VALUES (1)"

# Every binlog file of the sink's server, as events.
for f in $(my_on dst -e "SHOW BINARY LOGS" | awk '{print $1}'); do
  my_on dst -e "SHOW BINLOG EVENTS IN '$f'"
done >"$WORK/events.txt"
grep -q "(test.witness)" "$WORK/events.txt" || fail "a plain session's write is not in the binlog: the check below would prove nothing"
if grep -q "(test.nobin)\|(cdcsync.checkpoints)" "$WORK/events.txt"; then
  fail "the sink's writes reached the binlog: $(grep "(test.nobin)\|(cdcsync.checkpoints)" "$WORK/events.txt" | head -3)"
fi
if grep -qi "CREATE TABLE.*nobin" "$WORK/events.txt"; then fail "the sink's CREATE TABLE reached the binlog"; fi
log "the sink applied $(my_on dst -e "SELECT COUNT(*) FROM nobin") rows; none of its writes is in the server's binlog"
service_stop
finish
