#!/usr/bin/env bash
# MariaDB → Kafka end to end, read back with kcat (an independent client): initial snapshot, then
# inserts, updates (one changing the key), deletes, a truncate, NULLs, DECIMAL, DATETIME(6),
# TIMESTAMP, JSON, VARBINARY, ENUM and BIGINT UNSIGNED. Every message's envelope is checked against
# the source (source.connector "mysql", db/table, binlog file/pos), so are the per-key order and the
# tombstones after deletes, and replaying the topics must give exactly the source's rows
# (tests/kafka_mock/kafka_check.py --source mysql).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"
source "$SRCDIR/tests/kafka_mock/kafka_lib.sh"

my_start src 1
kafka_mock_start

my_on src <<'SQL'
CREATE TABLE orders (
  id BIGINT UNSIGNED PRIMARY KEY, customer VARCHAR(100) NOT NULL, amount DECIMAL(30,10), created DATETIME(6),
  seen TIMESTAMP(3) NULL DEFAULT NULL, meta JSON, bin VARBINARY(64), state ENUM('new','paid','gone'),
  ratio DOUBLE, counter BIGINT UNSIGNED) DEFAULT CHARSET=utf8mb4;
CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50));
SET time_zone = '+00:00';
INSERT INTO orders SELECT seq, CONCAT('cust', seq), seq * 1.25, '2024-01-01 00:00:00' + INTERVAL seq HOUR,
  '2024-06-01 12:00:00.5', JSON_OBJECT('n', seq, 'x', 1.5), X'00FF', 'new', seq / 4, seq * 1000
  FROM seq_1_to_30;
INSERT INTO items SELECT seq, CONCAT('item ', seq) FROM seq_1_to_10;
SQL

write_conf "$WORK/cdcsync.conf" off info <<CONF
[connector.msrc]
$(my_connector src 9101)

[connector.bus]
type = kafka
brokers = $KAFKA_BOOTSTRAP

[pipeline.m2k]
source = msrc
sink = bus
tables = *
snapshot = initial
batch_max_rows = 100
CONF

check() {
  python3 "$SRCDIR/tests/kafka_mock/kafka_check.py" --bootstrap "$KAFKA_BOOTSTRAP" --source mysql \
    --mysock "$MY_src_DIR/mysql.sock" --mydb test --connector msrc "$@"
}
TABLES=(test.orders test.items)
service_start
wait_for "the snapshot in kafka" 60 check --mode quiet "${TABLES[@]}"
log "initial snapshot in kafka"

my_on src <<'SQL'
SET time_zone = '+00:00';
BEGIN;
INSERT INTO orders VALUES (18446744073709551615, 'tab\tand\nnewline "quoted" \\ ünï ✓', 12345678901234567890.0123456789,
  '1999-12-31 23:59:59.999999', '2038-01-19 03:14:07.123', '{"deep": {"a": [1, 2.10, null]}}', X'DEADBEEF00',
  'paid', 0.1, 18446744073709551615);
UPDATE orders SET amount = amount + 1, state = 'paid' WHERE id BETWEEN 10 AND 15;
DELETE FROM orders WHERE id BETWEEN 20 AND 22;
UPDATE items SET name = NULL WHERE id = 5;
COMMIT;
-- key changes
UPDATE orders SET id = id + 10000 WHERE id BETWEEN 24 AND 25;
UPDATE items SET id = -id WHERE id <= 2;
-- NULLs and edge values
UPDATE orders SET amount = NULL, created = NULL, seen = NULL, meta = NULL, bin = NULL, state = NULL, ratio = NULL,
  counter = NULL WHERE id = 2;
UPDATE orders SET amount = -0.0000000001, created = '1000-01-01 00:00:00', bin = X'', counter = 0 WHERE id = 3;
-- a key deleted and inserted again
DELETE FROM items WHERE id = 7;
INSERT INTO items VALUES (7, 'seven again');
-- truncate, then refill
TRUNCATE items;
INSERT INTO items SELECT seq, CONCAT('again ', seq) FROM seq_1_to_5;
UPDATE items SET name = 'last' WHERE id = 5;
SQL
wait_for "the workload in kafka" 60 check --mode quiet "${TABLES[@]}"
check --mode report --require-op test.orders:r --require-op test.orders:c --require-op test.orders:u \
  --require-op test.orders:d --require-op test.items:t --require-op test.items:d "${TABLES[@]}" 2>"$WORK/report.txt" ||
  { cat "$WORK/report.txt" >&2; fail "kafka topics do not match the source"; }
cat "$WORK/report.txt" >&2
grep -q " 0 tombstones" "$WORK/report.txt" && fail "no tombstone after the deletes"

# Exact text of one message, as a consumer sees it.
kcat -b "$KAFKA_BOOTSTRAP" -C -t cdc.msrc.test.orders -e -q -f '%k\t%s\n' |
  grep -F '{"id":"18446744073709551615"}' | grep '"op":"c"' >"$WORK/big.txt" || fail "no create of the max unsigned key"
cat "$WORK/big.txt" >&2
assert_grep '"amount":"12345678901234567890.0123456789"' "$WORK/big.txt"
assert_grep '"created":"1999-12-31T23:59:59.999999"' "$WORK/big.txt"
assert_grep '"seen":"2038-01-19T03:14:07.123Z"' "$WORK/big.txt"
assert_grep '"bin":"3q2+7wA="' "$WORK/big.txt"
assert_grep '"state":"paid"' "$WORK/big.txt"
assert_grep '"counter":"18446744073709551615"' "$WORK/big.txt"
assert_grep '"connector":"mysql","name":"msrc"' "$WORK/big.txt"
assert_grep '"db":"test"' "$WORK/big.txt"
grep -Eq '"file":"[^"]+\.[0-9]{6}","pos":[0-9]+' "$WORK/big.txt" || fail "source.file/pos missing"

# The checkpoint is in Kafka at the binlog position; a restart resumes from it.
kcat -b "$KAFKA_BOOTSTRAP" -C -t cdcsync.checkpoints -e -q -f '%k %s\n' | tail -1 >"$WORK/ckpt.txt"
assert_grep 'm2k {"pipeline":"m2k","source":"msrc","position":"' "$WORK/ckpt.txt"
before=$(kcat -b "$KAFKA_BOOTSTRAP" -C -t cdc.msrc.test.items -e -q -f 'x\n' | wc -l)
service_stop
service_start
my_on src -e "INSERT INTO items VALUES (100, 'after restart')"
wait_for "the change after the restart" 60 check --mode quiet "${TABLES[@]}"
after=$(kcat -b "$KAFKA_BOOTSTRAP" -C -t cdc.msrc.test.items -e -q -f 'x\n' | wc -l)
[ $((after - before)) -eq 1 ] || fail "after a clean restart $((after - before)) messages came, want 1"
service_stop
finish
