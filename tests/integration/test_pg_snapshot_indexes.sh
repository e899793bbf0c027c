#!/usr/bin/env bash
# snapshot_indexes = after (the default; #14): an initial copy into empty PostgreSQL tables copies
# them without their indexes and builds each once with the table's last chunk. The sink ends with
# exactly the indexes and constraints it had (definitions, options, names), and a table whose
# index cannot be made again exactly (here: a comment on it) keeps its indexes. A kill -9 while a
# table's indexes are held back (its definitions recorded in cdcsync.deferred_indexes) loses
# nothing: the resumed copy builds them before it upserts, and the stream finds rows by key.
source "$(dirname "$0")/lib.sh"

pg_start src
pg_start dst

SCHEMA="
CREATE TABLE acct (id uuid PRIMARY KEY, cust int NOT NULL CHECK (cust >= 0), note text);
CREATE INDEX acct_cust ON acct (cust) WITH (fillfactor = 70);
CREATE INDEX acct_note_lower ON acct (lower(note)) WHERE cust % 2 = 0;
CREATE TABLE opts (id int, v text, CONSTRAINT opts_pk PRIMARY KEY (id) INCLUDE (v) WITH (fillfactor = 80));
CREATE INDEX opts_v_hash ON opts USING hash (v);
CREATE TABLE hist (a int, b text);
CREATE INDEX hist_a ON hist (a);
CREATE TABLE calm (a int, b text);
CREATE INDEX calm_b ON calm (b, a);
CREATE TABLE kept (id int PRIMARY KEY, v text);
CREATE INDEX kept_v ON kept (v);
COMMENT ON INDEX kept_v IS 'a comment an index built again would lose';"
psql_on src -c "$SCHEMA" >/dev/null
psql_on dst -c "$SCHEMA" >/dev/null
psql_on src <<'SQL'
INSERT INTO acct SELECT md5(g::text)::uuid, g % 1000, 'note ' || g FROM generate_series(1, 60000) g;
INSERT INTO opts SELECT g, 'v' || g FROM generate_series(1, 5000) g;
ALTER TABLE hist REPLICA IDENTITY FULL;
INSERT INTO hist SELECT g % 100, 'h' || g FROM generate_series(1, 5000) g;
INSERT INTO kept SELECT g, 'k' || g FROM generate_series(1, 500) g;
INSERT INTO calm SELECT g, 'c' || g FROM generate_series(1, 3000) g;
SQL

# Every index and constraint of the sink's public tables, as the catalogue defines them.
indexes() {
  psql_on dst -c "SELECT string_agg(d, E'\n' ORDER BY d) FROM (
    SELECT pg_get_indexdef(i.indexrelid) || coalesce(' -- ' || obj_description(i.indexrelid, 'pg_class'), '') AS d
      FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid WHERE t.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace = 'public'::regnamespace) x"
}
BEFORE=$(indexes)

# The sink's checkpoint row is held by a transaction of ours: the sink's transactions wait for
# it, and are let through one by one until one of acct's chunks waits with acct's indexes
# dropped and recorded. (The table is made as the sink makes it; the sink reuses it.)
psql_on dst -c "CREATE SCHEMA cdcsync" -c "CREATE TABLE cdcsync.checkpoints (pipeline text PRIMARY KEY,
  pos_hi numeric, pos_lo numeric, pos_text text, source_commit_ts timestamptz, updated_at timestamptz)" >/dev/null
mkfifo "$WORK/hold"
PGAPPNAME=holder psql_on dst <"$WORK/hold" >"$WORK/hold.out" 2>&1 &
HOLDER=$!
exec 3>"$WORK/hold"
echo "BEGIN; INSERT INTO cdcsync.checkpoints (pipeline) VALUES ('snap');" >&3

write_conf "$WORK/cdcsync.conf" off <<CONF
[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)

[pipeline.snap]
source = src
sink = dst
tables = public.acct, public.opts, public.hist, public.kept, public.calm
snapshot_chunk_rows = 2000
snapshot_workers = 1
CONF

psql_on dst -c "ALTER SYSTEM SET log_statement = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
service_start
sink_waits() {
  [ "$(psql_on dst -c "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
    AND query LIKE '%cdcsync.checkpoints%' AND application_name <> 'holder'")" -gt 0 ]
}
acct_deferred() {
  [ "$(psql_on dst -c "SELECT count(*) FROM cdcsync.deferred_indexes WHERE source_table = 'public.acct'")" -gt 0 ] &&
    [ "$(psql_on dst -c "SELECT count(*) FROM acct")" -gt 0 ]
}
# Each time the sink waits for our lock with acct's indexes not yet dropped and recorded (its
# first transaction may be another than acct's first chunk), one transaction is let through.
step() {
  sink_waits || return 1
  acct_deferred && return 0
  echo "COMMIT; BEGIN; SELECT pipeline FROM cdcsync.checkpoints WHERE pipeline = 'snap' FOR UPDATE;" >&3
  return 1
}
wait_for "a chunk of acct, copied without acct's indexes, to wait" 60 step
[ "$(psql_on dst -c "SELECT count(*) FROM pg_index WHERE indrelid = 'acct'::regclass")" = 0 ] ||
  fail "acct's indexes are there while its chunks are copied"
[ "$(psql_on dst -c "SELECT count(*) FROM cdcsync.deferred_indexes WHERE source_table = 'public.acct'")" = 4 ] ||
  fail "acct's 3 indexes (4 statements with its primary key) are not all recorded: $(psql_on dst -c "TABLE cdcsync.deferred_indexes")"
copied_before=$(psql_on dst -c "SELECT count(*) FROM acct")
service_kill9
echo "ROLLBACK;" >&3
exec 3>&-
wait "$HOLDER" || fail "the holding session failed: $(cat "$WORK/hold.out")"
log "killed with $copied_before rows of acct copied and its indexes held back"

# Changes while the service is down: the resumed copy and the stream must carry them.
psql_on src <<'SQL'
UPDATE acct SET cust = cust + 1 WHERE cust < 10;
DELETE FROM acct WHERE cust = 500;
INSERT INTO hist VALUES (7, 'while down');
UPDATE kept SET v = 'changed' WHERE id <= 10;
SQL
service_start
TABLES=(acct opts hist kept calm)
wait_synced src dst 120 "${TABLES[@]}"
copied_all() { [ "$(psql_on dst -c "SELECT count(*) FROM cdcsync.tables WHERE state IN ('copied', 'converging')")" = 5 ]; }
wait_for "every table recorded as copied" 60 copied_all
# No change touched calm (keyless, begun after the restart): its index came back with its last
# chunk, as every table's does, before the table was recorded as copied.
[ "$(psql_on dst -c "SELECT pg_get_indexdef('calm_b'::regclass)")" = "CREATE INDEX calm_b ON public.calm USING btree (b, a)" ] ||
  fail "calm is recorded as copied without its index"
# After the copy the stream finds rows by their keys again.
psql_on src -c "UPDATE acct SET note = 'streamed' WHERE cust = 3; DELETE FROM opts WHERE id <= 100; UPDATE hist SET b = 'x' WHERE a = 1"
wait_synced src dst 60 "${TABLES[@]}"
psql_on dst -c "ALTER SYSTEM RESET log_statement" -c "SELECT pg_reload_conf()" >/dev/null

AFTER=$(indexes)
if [ "$AFTER" != "$BEFORE" ]; then
  diff <(echo "$BEFORE") <(echo "$AFTER") >&2 || true
  fail "the sink's indexes and constraints are not what they were before the copy"
fi
[ "$(psql_on dst -c "SELECT count(*) FROM cdcsync.deferred_indexes")" = 0 ] || fail "index records left behind"
# acct and hist were copied into without their indexes (dropped before their COPY, acct's in the
# first run, hist's after the restart), and got them back after; kept's index, which has a
# comment, was never dropped. (opts, not begun before the kill, was resumed by upserts, which
# need its key: dropped and built again at once.)
srv="$PG_dst_DIR/server.log"
first_line() { grep -nF -- "$1" "$srv" | grep -v "DETAIL:" | head -1 | cut -d: -f1; }
order_ok() { # TABLE DROP BUILD
  local drop copy build
  drop=$(first_line "$2")
  copy=$(first_line "COPY \"public\".\"$1\"")
  build=$(first_line "$3")
  [ -n "$drop" ] && [ -n "$copy" ] && [ -n "$build" ] && [ "$drop" -lt "$copy" ] && [ "$copy" -lt "$build" ] ||
    fail "$1: not dropped (line $drop), copied (line $copy) and built (line $build) in that order in the sink's statement log"
}
order_ok acct 'DROP CONSTRAINT acct_pkey' 'CREATE UNIQUE INDEX acct_pkey'
order_ok hist 'DROP INDEX public.hist_a' 'CREATE INDEX hist_a'
order_ok calm 'DROP INDEX public.calm_b' 'CREATE INDEX calm_b'
grep -q "DROP INDEX public.kept_v\|DROP CONSTRAINT kept_pkey" "$srv" && fail "kept's indexes were dropped, though one has a comment"
assert_grep "initial copy of public.acct into \"public\".\"acct\": its 3 index(es) are built after the copy" "$WORK/service.log"
assert_grep "initial copy of public.acct: built the indexes of \"public\".\"acct\"" "$WORK/service.log"
assert_tables_equal src dst "${TABLES[@]}"
service_stop
finish
