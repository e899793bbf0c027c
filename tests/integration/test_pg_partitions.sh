#!/usr/bin/env bash
# Partitioned tables sync as their root (issue #17): with `tables = *` a range-partitioned table is
# copied in ctid chunks read from its leaves and streamed through its root
# (publish_via_partition_root) into a plain table that create_tables makes, a list-partitioned one
# into a target that is partitioned otherwise (hash); rows that move between partitions, a
# partition attached while streaming (its new rows come under the root), a partition detached
# (its rows stay in the sink), and no row twice: no leaf becomes a sink table of its own. A
# partition listed in `tables` with its root is refused by check. One cluster, two databases.
source "$(dirname "$0")/lib.sh"

pg_start p
MPORT=$(free_port)
db() {
  local d=$1
  shift
  psql -X -h "$PG_p_DIR" -p "$PG_p_PORT" -U postgres -d "$d" -qAt -v ON_ERROR_STOP=1 "$@"
}
dsn() { printf 'host=127.0.0.1 port=%s user=postgres dbname=%s' "$PG_p_PORT" "$1"; }
for d in src dst; do psql_on p -c "CREATE DATABASE $d"; done

db src <<'SQL'
CREATE TABLE ev (id int, day date, v text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE ev_2026_01 PARTITION OF ev FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE ev_2026_02 PARTITION OF ev FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
INSERT INTO ev SELECT i, date '2026-01-01' + i % 59, md5(i::text) FROM generate_series(1, 20000) i;
CREATE TABLE reg (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE reg_eu PARTITION OF reg FOR VALUES IN ('eu');
CREATE TABLE reg_other PARTITION OF reg DEFAULT;
INSERT INTO reg SELECT i, (ARRAY['eu', 'us', 'ap'])[1 + i % 3], md5(i::text) FROM generate_series(1, 6000) i;
CREATE TABLE byid (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE byid_1 PARTITION OF byid FOR VALUES FROM (1) TO (10001);
INSERT INTO byid SELECT i, md5(i::text) FROM generate_series(1, 5000) i;
CREATE TABLE plain (id int PRIMARY KEY, v text);
INSERT INTO plain SELECT i, md5(i::text) FROM generate_series(1, 1000) i;
ANALYZE;
SQL
# the sink's reg is partitioned too, but by hash: rows are routed by the target's own scheme
db dst <<'SQL'
CREATE TABLE reg (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY HASH (id);
CREATE TABLE reg_h0 PARTITION OF reg FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE reg_h1 PARTITION OF reg FOR VALUES WITH (MODULUS 2, REMAINDER 1);
SQL

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" <<CONF
[connector.src]
type = postgres
dsn = $(dsn src)
[connector.dst]
type = postgres
dsn = $(dsn dst)
create_tables = yes
[pipeline.parts]
source = src
sink = dst
tables = *
snapshot_chunk_rows = 1000
snapshot_workers = 2
CONF
printf 'admin-pw\n' >"$WORK/admin.pass"
chmod 600 "$WORK/admin.pass"
sed -i "/^metrics_listen/a admin_user = ops\nadmin_password_file = $WORK/admin.pass" "$WORK/cdcsync.conf"

# A partition listed beside its root would come twice: refused, naming both.
sed 's/^tables = \*$/tables = public.ev, public.ev_2026_02, public.plain/' "$WORK/cdcsync.conf" >"$WORK/listed.conf"
chmod 600 "$WORK/listed.conf"
"$CDCSYNC" -c "$WORK/listed.conf" check --connect >"$WORK/check.out" 2>&1 && fail "check accepted a partition listed with its root"
assert_grep "table public.ev_2026_02 is a partition of public.ev, which tables lists too" "$WORK/check.out"

# The application: upserts, deletes, and updates that move rows across partitions, all along
# the copy and the stream.
cat >"$WORK/w.sql" <<'SQL'
\set id random(1, 30000)
\set d random(0, 58)
BEGIN;
INSERT INTO ev VALUES (:id, date '2026-01-01' + :d, md5(random()::text)) ON CONFLICT (id, day) DO UPDATE SET v = excluded.v;
UPDATE ev SET day = date '2026-01-01' + (:d + 31) % 59 WHERE (id, day) = (SELECT id, day FROM ev WHERE id = :id + 1 ORDER BY day LIMIT 1)
  AND NOT EXISTS (SELECT 1 FROM ev WHERE id = :id + 1 AND day = date '2026-01-01' + (:d + 31) % 59);
DELETE FROM ev WHERE id = :id + 7;
INSERT INTO reg VALUES (:id, (ARRAY['eu', 'us', 'ap'])[1 + :id % 3], md5(random()::text)) ON CONFLICT (id, region) DO UPDATE SET v = excluded.v;
UPDATE plain SET v = md5(random()::text) WHERE id = :id % 1000;
COMMIT;
SQL
pgbench -n -h "$PG_p_DIR" -p "$PG_p_PORT" -U postgres -c 1 -j 1 -T 6 -R 300 -f "$WORK/w.sql" src \
  >"$WORK/pgbench.log" 2>&1 &
BENCH=$!
service_start
wait $BENCH || fail "pgbench failed: $(tail -5 "$WORK/pgbench.log")"
log "writers stopped: $(grep -o 'number of transactions actually processed: [0-9]*' "$WORK/pgbench.log" || true)"

same() { # same SINK_TABLE SOURCE_QUERY
  local a b
  a=$(table_digest p/src "$2")
  b=$(table_digest p/dst "$1")
  [ "$a" = "$b" ] || { echo "$1: source $a, sink $b"; return 1; }
}
wait_for "ev equal" 120 same ev ev
wait_for "reg equal" 60 same reg reg
wait_for "plain equal" 60 same plain plain
# the root's rows were copied from its leaves (a partitioned table has no heap of its own)
copied=$(grep -o 'snapshot of public.ev: [0-9]* rows' "$WORK/service.log" | head -1 | grep -o '[0-9]* rows' | cut -d' ' -f1)
[ "${copied:-0}" -ge 19000 ] || fail "the initial copy of ev read ${copied:-no} rows"
log "initial copy: $copied rows of ev; $(grep -o 'snapshot: [0-9]* tables, [0-9]* chunks' "$WORK/service.log" | head -1)"
[ "$(db dst -c "SELECT relkind FROM pg_class WHERE oid = 'public.ev'::regclass")" = r ] || fail "sink ev is not a plain table"
[ "$(db dst -c "SELECT count(*) FROM pg_tables WHERE tablename ~ '^(ev|reg)_'")" = 2 ] ||
  fail "a partition became a sink table of its own: $(db dst -c "SELECT string_agg(tablename, ' ') FROM pg_tables WHERE schemaname = 'public'")"
[ "$(db dst -c "SELECT count(*) FROM reg_h0")" -gt 0 ] || fail "the sink's hash partitions hold no rows"

# ATTACH while streaming: the new partition's rows come under the root.
db src <<'SQL'
CREATE TABLE ev_2026_03 (LIKE ev INCLUDING DEFAULTS);
ALTER TABLE ev ATTACH PARTITION ev_2026_03 FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
INSERT INTO ev SELECT 100000 + i, date '2026-03-01' + i % 31, 'march' FROM generate_series(1, 500) i;
UPDATE ev SET day = day + 28 WHERE id BETWEEN 1 AND 50 AND day >= '2026-02-01';
SQL
wait_for "ev equal after ATTACH" 60 same ev ev
[ "$(db dst -c "SELECT count(*) FROM ev WHERE day >= '2026-03-01'")" -ge 500 ] || fail "the attached partition's rows are missing"

# DETACH while streaming: the detached table's rows stay in the sink's root (a detach writes no
# row changes), and the root streams on.
db src -c "ALTER TABLE ev DETACH PARTITION ev_2026_01"
db src -c "INSERT INTO ev SELECT 200000 + i, date '2026-02-01' + i % 28, 'after detach' FROM generate_series(1, 300) i; DELETE FROM ev WHERE id BETWEEN 100001 AND 100100"
wait_for "ev equal after DETACH (the root and the detached rows)" 60 \
  same ev "(SELECT * FROM ev UNION ALL SELECT * FROM ev_2026_01)"
[ "$(db dst -c "SELECT count(*) FROM pg_tables WHERE tablename = 'ev_2026_01'")" = 0 ] || fail "the detached partition appeared in the sink"

# A table attached with rows: they are not in the stream (the sink's root lacks them, as the
# README says); `cdcsync resnapshot` copies the root again, from its leaves, and they arrive.
wait_for "byid equal" 60 same byid byid
db src <<'SQL'
CREATE TABLE byid_2 (LIKE byid INCLUDING DEFAULTS);
INSERT INTO byid_2 SELECT i, 'before attach' FROM generate_series(10001, 10100) i;
ALTER TABLE byid ATTACH PARTITION byid_2 FOR VALUES FROM (10001) TO (20001);
INSERT INTO byid VALUES (15000, 'after attach');
SQL
wait_for "the row inserted after the attach" 60 yields "after attach" db dst -c "SELECT v FROM byid WHERE id = 15000"
[ "$(db dst -c "SELECT count(*) FROM byid WHERE id BETWEEN 10001 AND 10100")" = 0 ] ||
  fail "rows of a table attached with data reached the sink's root through the stream"
"$CDCSYNC" -c "$WORK/cdcsync.conf" resnapshot parts public.byid >"$WORK/resnap.out" 2>&1 || { cat "$WORK/resnap.out" >&2; fail "cdcsync resnapshot failed"; }
wait_for "byid equal after its resnapshot" 120 same byid byid
assert_tables_equal p/src p/dst reg plain
[ "$(db dst -c "SELECT count(*) FROM byid")" = 5101 ] || fail "byid has $(db dst -c "SELECT count(*) FROM byid") rows on the sink"
metrics=$(curl -sf "http://127.0.0.1:$MPORT/metrics")
grep -q '^cdcsync_pipeline_up{pipeline="parts"} 1' <<<"$metrics" || fail "the pipeline is not up"
service_stop
finish
