#!/usr/bin/env bash
# The chunked initial copy (#14) survives kill -9: four writers keep changing a 1,200,000-row
# table (updates that move rows between blocks, key changes, deletes, inserts), a 600,000-row
# table without key (copied whole again when cut short) and a table whose TOAST values updates
# leave unsent, while the service is killed three times during the copy. After each restart the slot is kept, the sink's row count of the big table
# never falls back (the chunks done stay done), the chunks left are read as of a new snapshot,
# and the stream from the copy's start converges every table to the source: equal at the end.
# The sink applies with two sessions (apply_workers = 2): the copy's chunks go side by side, not
# one at a time (the log's count of chunk batches applied alone), through every kill.
source "$(dirname "$0")/lib.sh"

pg_start src
pg_start dst
psql_on src <<'SQL'
CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, pad text);
INSERT INTO big SELECT g, g % 1000, 'p' || g FROM generate_series(1, 1200000) g;
CREATE TABLE audit (a int, b text);
INSERT INTO audit SELECT g % 5000, 'n' || g FROM generate_series(1, 600000) g;
CREATE TABLE toasty (id int PRIMARY KEY, n int, doc text);
ALTER TABLE toasty ALTER COLUMN doc SET STORAGE EXTERNAL;
INSERT INTO toasty SELECT g, 0, repeat(md5(g::text), 100) FROM generate_series(1, 2000) g;
ANALYZE;
SQL

PORT=$(free_port)
write_conf "$WORK/cdcsync.conf" "127.0.0.1:$PORT" <<CONF
[connector.src]
type = postgres
dsn = $(pg_dsn src)

[connector.dst]
type = postgres
dsn = $(pg_dsn dst)
create_tables = yes

[pipeline.snap]
source = src
sink = dst
tables = public.big, public.audit, public.toasty
snapshot_workers = 2
snapshot_chunk_rows = 20000
apply_workers = 2
CONF

# Writers: each transaction moves rows (an update of a row makes a new tuple, often in another
# block), changes a key, deletes and inserts; toasty's updates leave doc unsent (unchanged TOAST).
writer() {
  local w=$1 i=0
  while [ ! -e "$WORK/stop" ]; do
    i=$((i + 1))
    psql_on src >/dev/null 2>&1 <<SQL || true
BEGIN;
UPDATE big SET v = v + 1, pad = pad || 'u' WHERE id = (($w * 7919 + $i * 104729) % 1200000) + 1;
UPDATE big SET id = id + 5000000 WHERE id = (($w * 15485863 + $i * 32452843) % 1200000) + 1;
DELETE FROM big WHERE id = (($w * 49979687 + $i * 67867967) % 1200000) + 1;
INSERT INTO big VALUES (10000000 + $w * 1000000 + $i, $i, 'new') ON CONFLICT DO NOTHING;
UPDATE toasty SET n = n + 1 WHERE id = (($w * 31 + $i * 17) % 2000) + 1;
DELETE FROM audit WHERE ctid = (SELECT ctid FROM audit WHERE a = ($w * 13 + $i) % 5000 LIMIT 1);
INSERT INTO audit VALUES ($i, 'w$w');
COMMIT;
SQL
  done
}
WRITERS=()
for w in 1 2 3 4; do
  writer "$w" &
  WRITERS+=($!)
done

dst_count() { psql_on dst -c "SELECT count(*) FROM big" 2>/dev/null || echo 0; }
# audit (no key) is copied first ("audit" < "big"): the first kill comes in the middle of it
audit_above() { [ "$(psql_on dst -c "SELECT count(*) FROM audit" 2>/dev/null || echo 0)" -gt "$1" ]; }
big_above() { [ "$(dst_count)" -gt "$1" ]; }
resumed() { [ "$(grep -c "resuming the initial copy" "$WORK/service.log")" -ge "$1" ]; }
copying() { [ "$(psql_on dst -c "SELECT count(*) FROM cdcsync.tables WHERE state = 'copying'")" -gt 0 ]; }

service_start
last=0
for kill in 1 2 3; do
  if [ "$kill" = 1 ]; then
    wait_for "the sink to hold some rows of audit" 120 audit_above 60000
  else
    wait_for "the sink to hold $((last + 150000)) rows of big" 120 big_above $((last + 150000))
  fi
  service_kill9
  copying || fail "kill $kill came after the copy ended: make the table bigger or the chunks smaller"
  now=$(dst_count)
  log "kill -9 number $kill during the copy: the sink holds $now rows of big"
  [ "$now" -ge "$last" ] || fail "the sink's row count fell back from $last to $now"
  last=$now
  service_start
  wait_for "the copy to resume after kill $kill" 60 resumed "$kill"
  now=$(dst_count)
  [ "$now" -ge "$last" ] || fail "after restart $kill the sink's row count fell back from $last to $now"
  if [ "$kill" = 1 ]; then
    # Progress as an operator sees it: per table in `cdcsync status` and /metrics.
    progress() {
      "$CDCSYNC" -c "$WORK/cdcsync.conf" status >"$WORK/status.out" 2>&1 &&
        grep -Eq '^snap snapshot public\.big: [0-9]+ of ~[0-9]+ rows, [0-9]+/[0-9]+ chunks, [0-9]+ rows/s, ETA' "$WORK/status.out" &&
        curl -sf "http://127.0.0.1:$PORT/metrics" >"$WORK/metrics.out" &&
        grep -Eq '^cdcsync_snapshot_rows_total\{pipeline="snap",table="public.big"\} [1-9]' "$WORK/metrics.out" &&
        grep -Eq '^cdcsync_snapshot_chunks_remaining\{pipeline="snap"\} [1-9]' "$WORK/metrics.out"
    }
    wait_for "snapshot progress in cdcsync status and /metrics" 60 progress
    grep snapshot "$WORK/status.out" >&2
  fi
done
! grep -q "left by an unfinished snapshot" "$WORK/service.log" || fail "a restart dropped the slot"

assert_grep "audit: a table without primary key cannot be upserted: emptied and copied again whole" "$WORK/service.log"
wait_for "the copy to end" 180 grep -q "snapshot of public.big: " "$WORK/service.log"
grep -q "snapshot: [0-9]* of [0-9]* chunks, [0-9]* of ~[0-9]* rows, [0-9]* rows/s, ETA" "$WORK/service.log" ||
  fail "no progress line in the log"
touch "$WORK/stop"
wait "${WRITERS[@]}"
psql_on src -c "INSERT INTO big VALUES (-1, -1, 'after the writers')"
wait_synced src dst 180 big audit toasty
assert_tables_equal src dst big audit toasty
[ "$(psql_on dst -c "SELECT count(*) FROM cdcsync.tables WHERE state IN ('copying', 'chunk')")" = 0 ] ||
  fail "chunk records were left behind"
service_stop
# the last attempt's dispatcher: its chunk batches beside others, but for each table's first
line=$(grep "apply_workers = 2: .* batches of a copy's chunks" "$WORK/service.log" | tail -1)
log "${line#*] }"
chunks=$(sed -E "s/.* ([0-9]+) batches of a copy's chunks, ([0-9]+) of them alone.*/\1/" <<<"$line")
alone=$(sed -E "s/.* ([0-9]+) batches of a copy's chunks, ([0-9]+) of them alone.*/\2/" <<<"$line")
[ -n "$line" ] && [ "$chunks" -ge 10 ] && [ "$alone" -le 3 ] ||
  fail "the last attempt's chunks were not applied side by side: '$line'"
finish
