#!/usr/bin/env bash
# PostgreSQL → Kafka end to end, read back with kcat (an independent client): initial snapshot,
# then inserts, updates (one changing the key), deletes, a truncate, NULLs, numeric, timestamptz,
# jsonb, bytea, arrays and an unchanged TOASTed column. Every message's envelope is checked against
# the source, so are the per-key order and the tombstones after deletes, and replaying the topics
# must give exactly the source's rows (tests/kafka_mock/kafka_check.py).
source "$(dirname "$0")/lib.sh"
source "$SRCDIR/tests/kafka_mock/kafka_lib.sh"

pg_start src
kafka_mock_start

psql_on src <<'SQL'
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2), created timestamptz,
  meta jsonb, blob bytea, flag boolean, tags text[], ratio double precision, big text);
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO orders SELECT g, 'cust' || g, g * 1.25, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour',
  jsonb_build_object('n', g, 'x', 1.10), '\x00ff'::bytea, g % 2 = 0, ARRAY['a' || g, 'b c'], g / 3.0, NULL
  FROM generate_series(1, 50) g;
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 20) g;
SQL

cat >"$WORK/cdcsync.conf" <<CONF
[service]
state_dir = $WORK/state
metrics_listen = off
log_level = info

[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.bus]
type = kafka
brokers = $KAFKA_BOOTSTRAP
kafka.compression.type = lz4

[pipeline.tokafka]
source = src
sink = bus
tables = *
batch_max_rows = 100
CONF

"$CDCSYNC" -c "$WORK/cdcsync.conf" check --connect >"$WORK/check.out" 2>&1 || fail "check --connect failed: $(cat "$WORK/check.out")"
assert_grep "kafka bus: 3 broker(s)" "$WORK/check.out"

# A kafka.* key librdkafka does not know is refused, naming the key.
sed 's/^kafka.compression.type = lz4$/kafka.compression.typo = lz4/' "$WORK/cdcsync.conf" >"$WORK/bad.conf"
"$CDCSYNC" -c "$WORK/bad.conf" check --connect >"$WORK/bad.out" 2>&1 && fail "a bad kafka.* key was accepted"
assert_grep "kafka.compression.typo" "$WORK/bad.out"

TABLES=(public.orders public.items)
service_start
wait_for "the snapshot in kafka" 60 kafka_check src quiet "${TABLES[@]}"
log "initial snapshot in kafka"

psql_on src <<'SQL'
BEGIN;
INSERT INTO orders (id, customer, amount, created, meta, blob, flag, tags, ratio)
  VALUES (1001, E'tab\tand\nnewline "quoted" \\ ünï ✓', 12345678.91, '1999-12-31 23:59:59.999999+05',
          '{"deep": {"a": [1, 2.10, null]}}', decode(repeat('00ff10', 100), 'hex'), true, '{}', 'NaN');
UPDATE orders SET amount = amount + 1, tags = tags || 'c'::text WHERE id BETWEEN 10 AND 20;
DELETE FROM orders WHERE id BETWEEN 30 AND 35;
UPDATE items SET name = NULL WHERE id = 5;
COMMIT;
-- key changes
UPDATE orders SET id = id + 10000 WHERE id BETWEEN 40 AND 42;
UPDATE items SET id = -id WHERE id <= 3;
-- NULLs and special values
UPDATE orders SET amount = NULL, created = NULL, meta = NULL, blob = NULL, flag = NULL, tags = NULL WHERE id = 2;
UPDATE orders SET amount = -0.01, created = '2000-01-01 00:00:00+05:30', ratio = '-Infinity' WHERE id = 3;
-- a TOASTed column set once, then the row updated without touching it
UPDATE orders SET big = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 2000) g) WHERE id = 4;
UPDATE orders SET customer = 'toast untouched' WHERE id = 4;
-- a key deleted and inserted again
DELETE FROM items WHERE id = 7;
INSERT INTO items VALUES (7, 'seven again');
-- truncate, then refill
TRUNCATE items;
INSERT INTO items SELECT g, 'again ' || g FROM generate_series(1, 10) g;
UPDATE items SET name = 'last' WHERE id = 10;
SQL
wait_for "the workload in kafka" 60 kafka_check src quiet "${TABLES[@]}"
kafka_check src report --vclock --require-op public.orders:r --require-op public.orders:c --require-op public.orders:u \
  --require-op public.orders:d --require-op public.items:t "${TABLES[@]}" 2>"$WORK/report.txt" ||
  { cat "$WORK/report.txt" >&2; fail "kafka topics do not match the source"; }
cat "$WORK/report.txt" >&2
grep -q " 0 TOAST placeholders" "$WORK/report.txt" && fail "the unchanged TOAST column was not sent as the placeholder"

# Exact text of one message, as a consumer sees it.
kcat -b "$KAFKA_BOOTSTRAP" -C -t cdc.src.public.orders -e -q -f '%k\t%s\n' | grep -F '{"id":1001}' >"$WORK/1001.txt"
assert_grep '"amount":12345678.91' "$WORK/1001.txt"
assert_grep '"created":"1999-12-31T18:59:59.999999Z"' "$WORK/1001.txt"
assert_grep '"meta":{"deep": {"a": [1, 2.10, null]}}' "$WORK/1001.txt"
assert_grep '"tags":[]' "$WORK/1001.txt"
assert_grep '"ratio":"NaN"' "$WORK/1001.txt"
assert_grep '"customer":"tab\tand\nnewline \"quoted\" \\ ünï ✓"' "$WORK/1001.txt"

# The row's version vector under source: for id 10 (snapshot read, then one update per
# transaction below), src's counter grows with every version and is the commit LSN.
psql_on src -c "UPDATE orders SET amount = 1 WHERE id = 10" -c "UPDATE orders SET amount = 2 WHERE id = 10"
wait_for "the updates of id 10 in kafka" 60 kafka_check src quiet "${TABLES[@]}"
kcat -b "$KAFKA_BOOTSTRAP" -C -t cdc.src.public.orders -e -q -f '%k\t%s\n' | grep -F '{"id":10}' >"$WORK/10.txt"
python3 - "$WORK/10.txt" <<'PY' || fail "the version vectors of id 10 do not grow: $(cat "$WORK/10.txt")"
import json, sys
vv = [json.loads(l.split("\t", 1)[1])["source"].get("cdcsync_vclock") for l in open(sys.argv[1])]
print(f"id 10: {len(vv)} messages, vectors {vv}", file=sys.stderr)
assert len(vv) >= 4 and all(v and set(v) == {"src"} for v in vv), vv
assert all(a["src"] < b["src"] for a, b in zip(vv, vv[1:])), vv
PY

# The checkpoint is in Kafka, keyed by the pipeline, at the source's position.
kcat -b "$KAFKA_BOOTSTRAP" -C -t cdcsync.checkpoints -e -q -f '%k %s\n' | tail -1 >"$WORK/ckpt.txt"
assert_grep 'tokafka {"pipeline":"tokafka"' "$WORK/ckpt.txt"
flush=$(psql_on src -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'cdcsync_tokafka'")
log "checkpoint: $(cat "$WORK/ckpt.txt"); slot confirmed at $flush"

# A restart resumes from the checkpoint: nothing is sent again.
before=$(kcat -b "$KAFKA_BOOTSTRAP" -C -t cdc.src.public.orders -e -q -f 'x\n' | wc -l)
service_stop
service_start
psql_on src -c "INSERT INTO orders (id, customer) VALUES (5000, 'after restart')"
wait_for "the change after the restart" 60 kafka_check src quiet --vclock "${TABLES[@]}"
after=$(kcat -b "$KAFKA_BOOTSTRAP" -C -t cdc.src.public.orders -e -q -f 'x\n' | wc -l)
[ $((after - before)) -eq 1 ] || fail "after a clean restart $((after - before)) messages came, want 1"
assert_grep "resuming from the sink's checkpoint" "$WORK/service.log"
service_stop
finish
