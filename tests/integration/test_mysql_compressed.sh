#!/usr/bin/env bash
# MySQL → PostgreSQL from a MariaDB writing compressed binlog events (log_bin_compress = ON,
# log_bin_compress_min_len = 10: nearly every QUERY and rows event is compressed). A mixed
# workload (multi-statement transactions, key updates, deletes, a 5 MB row inserted, updated and
# deleted, a 500-row statement, TRUNCATE) and DDL logged as compressed QUERY events: an ALTER
# TABLE ADD COLUMN followed by rows using the new columns (the source must reload the table's
# schema at that point of the stream) and a CREATE TABLE followed by its rows. Both sides end
# with equal ordered contents, and the binlog is checked to really hold the compressed kinds.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"
export PGTZ=UTC

MYSQL_EXTRA_CNF=$'log_bin_compress = ON\nlog_bin_compress_min_len = 10' my_start src 1
pg_start dst
MPORT=$(free_port)

[ "$(my_on src -e "SELECT @@log_bin_compress")" = 1 ] || fail "the server did not take log_bin_compress = ON"

my_on src <<'SQL'
CREATE TABLE big (id INT PRIMARY KEY, note VARCHAR(200), n DECIMAL(12,3), payload LONGBLOB, doc MEDIUMTEXT)
  DEFAULT CHARSET=utf8mb4;
CREATE TABLE evolving (id INT PRIMARY KEY, a VARCHAR(50)) DEFAULT CHARSET=utf8mb4;
INSERT INTO big VALUES (1, 'existing row, copied by the snapshot', 1.000, X'0001', 'snapshot');
INSERT INTO evolving VALUES (1, 'existing');
SQL
# evolving gets two columns on the source while streaming; the PostgreSQL sink does not add
# columns, so its table is made with them beforehand (the other tables: create_tables).
psql_on dst -c "CREATE TABLE public.evolving (id int PRIMARY KEY, a text, b int, c text)"

my_to_pg_conf m2p '*'

# Normal forms (see compare_rows.py); the large columns by length and MD5.
MY_BIG="CONCAT_WS(CHAR(9), CONCAT('v:', id), IFNULL(CONCAT('v:', HEX(CONVERT(note USING utf8mb4))), 'null'),
  IFNULL(CONCAT('v:', n), 'null'), IFNULL(CONCAT('v:', LENGTH(payload)), 'null'), IFNULL(CONCAT('v:', MD5(payload)), 'null'),
  IFNULL(CONCAT('v:', CHAR_LENGTH(doc)), 'null'), IFNULL(CONCAT('v:', MD5(CONVERT(doc USING utf8mb4))), 'null'))"
PG_BIG="concat_ws(E'\t', 'v:' || id, coalesce('v:' || encode(convert_to(note, 'UTF8'), 'hex'), 'null'),
  coalesce('v:' || n, 'null'), coalesce('v:' || length(payload), 'null'), coalesce('v:' || md5(payload), 'null'),
  coalesce('v:' || char_length(doc), 'null'), coalesce('v:' || md5(convert_to(doc, 'UTF8')), 'null'))"
MY_EVO2="CONCAT_WS(CHAR(9), CONCAT('v:', id), IFNULL(CONCAT('v:', HEX(a)), 'null'))"
PG_EVO2="concat_ws(E'\t', 'v:' || id, coalesce('v:' || encode(convert_to(a, 'UTF8'), 'hex'), 'null'))"
MY_EVO4="CONCAT_WS(CHAR(9), CONCAT('v:', id), IFNULL(CONCAT('v:', HEX(a)), 'null'), IFNULL(CONCAT('v:', b), 'null'),
  IFNULL(CONCAT('v:', HEX(c)), 'null'))"
PG_EVO4="concat_ws(E'\t', 'v:' || id, coalesce('v:' || encode(convert_to(a, 'UTF8'), 'hex'), 'null'),
  coalesce('v:' || b, 'null'), coalesce('v:' || encode(convert_to(c, 'UTF8'), 'hex'), 'null'))"
MY_LATER="CONCAT_WS(CHAR(9), CONCAT('v:', id), IFNULL(CONCAT('v:', HEX(v)), 'null'))"
PG_LATER="concat_ws(E'\t', 'v:' || id, coalesce('v:' || encode(convert_to(v, 'UTF8'), 'hex'), 'null'))"

dump_pair() { # TABLE MYEXPR PGEXPR
  my_on src -e "SELECT $2 FROM $1 ORDER BY id" >"$WORK/my.$1" &&
    psql_on dst -F $'\t' -c "SELECT $3 FROM public.$1 ORDER BY id" >"$WORK/pg.$1"
}
big_equal() { dump_pair big "$MY_BIG" "$PG_BIG" && rows_equal sunssss "$WORK/my.big" "$WORK/pg.big"; }
synced_before() {
  big_equal && dump_pair evolving "$MY_EVO2" "$PG_EVO2" && rows_equal su "$WORK/my.evolving" "$WORK/pg.evolving"
}
synced_after() {
  big_equal && dump_pair evolving "$MY_EVO4" "$PG_EVO4" && rows_equal susu "$WORK/my.evolving" "$WORK/pg.evolving" &&
    dump_pair later "$MY_LATER" "$PG_LATER" && rows_equal su "$WORK/my.later" "$WORK/pg.later"
}

"$CDCSYNC" -c "$WORK/cdcsync.conf" check >"$WORK/check.out" || fail "check failed: $(cat "$WORK/check.out")"
service_start
wait_for "initial snapshot equal" 30 synced_before
read -r first_file first_pos < <(my_on src -e "SHOW MASTER STATUS" | awk '{print $1, $2}')

my_on src <<'SQL'
SET SESSION group_concat_max_len = 67108864;
-- a multi-statement transaction holding a 5 MB row (3.8 MB of hex digests, 1 M characters of
-- UTF-8 text): its compressed rows event is far smaller than the row
BEGIN;
INSERT INTO big VALUES (10, 'large row', 12345.678,
  (SELECT GROUP_CONCAT(SHA2(seq, 512) SEPARATOR '') FROM seq_1_to_30000), REPEAT('ünïcødé ✓ ', 100000));
UPDATE big SET note = 'updated in the same transaction', n = -0.001 WHERE id = 1;
INSERT INTO evolving VALUES (2, 'two'), (3, 'three');
COMMIT;
-- the large row updated (before and after images: 10 MB uncompressed), a key update
UPDATE big SET note = 'large row, updated', payload = CONCAT(payload, 'tail') WHERE id = 10;
UPDATE big SET id = 11 WHERE id = 10;
-- many rows in one statement: several compressed rows events
INSERT INTO big (id, note, n) SELECT seq + 100, CONCAT('row ', seq, ' é'), seq / 8 FROM seq_1_to_500;
BEGIN;
UPDATE big SET n = -n, doc = 'negated' WHERE id BETWEEN 150 AND 170;
DELETE FROM big WHERE id > 580;
DELETE FROM evolving WHERE id = 3;
COMMIT;
-- DDL: new columns, then rows using them (no DEFAULT: the ALTER itself writes no row events)
ALTER TABLE evolving ADD COLUMN b INT, ADD COLUMN c VARCHAR(20);
INSERT INTO evolving VALUES (4, 'after alter', 40, 'c four');
UPDATE evolving SET b = 20, c = NULL WHERE id = 2;
-- DDL: a new table and its rows
CREATE TABLE later (id INT PRIMARY KEY, v VARCHAR(30)) DEFAULT CHARSET=utf8mb4;
INSERT INTO later VALUES (1, 'created while streaming'), (2, 'second');
TRUNCATE TABLE later;
INSERT INTO later VALUES (3, 'after the truncate');
-- the large row deleted: its whole before image travels compressed
DELETE FROM big WHERE id = 11;
INSERT INTO big VALUES (12, 'another large row', 0, REPEAT(X'00FF', 1000000), REPEAT('x', 70000));
SQL

# The workload really went through the compressed kinds.
my_on src -e "SHOW BINLOG EVENTS IN '$first_file' FROM $first_pos" | awk -F'\t' '{print $3}' | sort | uniq -c >"$WORK/kinds"
for kind in Query_compressed Write_rows_compressed_v1 Update_rows_compressed_v1 Delete_rows_compressed_v1; do
  grep -q " $kind\$" "$WORK/kinds" || fail "no $kind event in the binlog: $(tr '\n' ' ' <"$WORK/kinds")"
done
# (a rows event whose rows are shorter than log_bin_compress_min_len stays uncompressed: both kinds
# interleave, as on a production server)
log "binlog events of the workload: $(tr -s ' \n' ' ' <"$WORK/kinds")"

wait_for "workload equal" 90 synced_after
log "workload equal: $(wc -l <"$WORK/my.big") rows in big, $(wc -l <"$WORK/my.evolving") in evolving, $(wc -l <"$WORK/my.later") in later"
assert_grep $'v:4\tv:' "$WORK/pg.evolving"
grep -q "^v:4	v:[0-9a-f]*	v:40	v:" "$WORK/pg.evolving" || fail "the row after the ALTER lacks its new columns: $(cat "$WORK/pg.evolving")"

# Caught up: the sink's checkpoint is the source's binlog end.
read -r bfile bpos < <(my_on src -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
want="$((10#${bfile##*.})):$bpos"
ckpt() { psql_on dst -c "SELECT pos_hi || ':' || pos_lo FROM cdcsync.checkpoints WHERE pipeline = 'm2p'" | grep -qx "$want"; }
wait_for "checkpoint at the binlog end ($bfile:$bpos)" 30 ckpt
if grep -qi "compressed" "$WORK/service.log"; then
  fail "the service complained about compressed events: $(grep -i compressed "$WORK/service.log" | head -3)"
fi
service_stop
finish
