#!/usr/bin/env bash
# The MariaDB source's chunked initial copy (#14) survives kill -9: three writers keep changing a
# 200,000-row table whose keys run from negative to positive (updates, key changes that move rows
# into other chunks, deletes, inserts) and insert into a table without key, while the service is
# killed three times during the copy. The first attempt runs without the RELOAD privilege (one
# reader, said in the log); the restarts have it, so their readers share one snapshot taken
# under BACKUP STAGE BLOCK_COMMIT. After each restart the sink's row count of the big table never
# falls back (the chunks done stay done), the chunks left are read as of a new snapshot, and the
# stream from the copy's start converges every table to the source: equal at the end, no chunk
# record left.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/mylib.sh"

my_start src 1
my_start dst 2
MPORT=$(free_port)

my_on src -e "CREATE TABLE big (id INT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(60));
  INSERT INTO big SELECT CAST(seq AS SIGNED) - 50000, seq % 1000, CONCAT('p', seq) FROM seq_1_to_200000;
  CREATE TABLE nokey (w INT, seq INT, payload VARCHAR(40));
  INSERT INTO nokey SELECT 0, seq, CONCAT('n', seq) FROM seq_1_to_20000;
  ANALYZE TABLE big, nokey;" >/dev/null

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" info <<CONF
[connector.msrc]
$(my_connector src 9001)

[connector.mdst]
$(my_connector dst 9002)
create_tables = yes

[pipeline.snap]
source = msrc
sink = mdst
tables = test.big, test.nokey
snapshot_workers = 2
snapshot_chunk_rows = 8000
CONF

# One writer: batches of 20 transactions through one client (--force: a key change that meets a
# key another writer made goes on), until $WORK/stop exists. Moved and new keys stay near the
# table's (key ranges are planned by MIN and MAX: far outliers make uneven chunks).
writer() {
  local w=$1 b=0 k i
  while [ ! -f "$WORK/stop" ] && [ -d "$WORK" ]; do
    for k in $(seq 1 20); do
      i=$((b * 20 + k))
      echo "BEGIN;
        UPDATE big SET v = v + 1, pad = CONCAT(LEFT(pad, 50), 'u') WHERE id = $(((w * 7919 + i * 104729) % 200000 - 49999));
        UPDATE big SET id = id + 200000 WHERE id = $(((w * 15485863 + i * 32452843) % 200000 - 49999));
        DELETE FROM big WHERE id = $(((w * 49979687 + i * 67867967) % 200000 - 49999));
        INSERT INTO big VALUES ($((360000 + w * 20000 + i)), $i, 'new');
        INSERT INTO nokey VALUES ($w, $i, 'w$w-$i');
        COMMIT;"
    done | my_on src --force 2>/dev/null || true
    b=$((b + 1))
  done
}
WRITERS=()
for w in 1 2 3; do
  writer "$w" &
  WRITERS+=($!)
done

dst_count() { my_on dst -e "SELECT count(*) FROM big" 2>/dev/null || echo 0; }
big_above() { [ "$(dst_count)" -gt "$1" ]; }
resumed() { [ "$(grep -c "resuming the initial copy" "$WORK/service.log")" -ge "$1" ]; }
copying() { [ "$(my_on dst -e "SELECT count(*) FROM cdcsync.tables WHERE state = 'copying'")" -gt 0 ]; }

service_start
last=0
for kill in 1 2 3; do
  wait_for "the sink to hold $((last + 25000)) rows of big" 120 big_above $((last + 25000))
  service_kill9
  copying || fail "kill $kill came after the copy ended: make the table bigger or the chunks smaller"
  now=$(dst_count)
  log "kill -9 number $kill during the copy: the sink holds $now rows of big"
  [ "$now" -ge "$last" ] || fail "the sink's row count fell back from $last to $now"
  last=$now
  if [ "$kill" = 1 ]; then
    grep -q "snapshot_workers = 2, but the source's commits cannot be held.*copying with one reader; GRANT RELOAD" \
      "$WORK/service.log" || fail "no log line saying the copy runs with one reader for want of RELOAD"
    my_on src -e "GRANT RELOAD ON *.* TO 'cdc'@'127.0.0.1', 'cdc'@'localhost'"
  fi
  service_start
  wait_for "the copy to resume after kill $kill" 60 resumed "$kill"
  now=$(dst_count)
  [ "$now" -ge "$last" ] || fail "after restart $kill the sink's row count fell back from $last to $now"
  if [ "$kill" = 1 ]; then
    grep -q "snapshot: 2 readers share one consistent snapshot at mariadb-bin\.[0-9]*:[0-9]*; the source's commits were held for [0-9.]* ms (BACKUP STAGE BLOCK_COMMIT)" \
      "$WORK/service.log" || fail "the resumed copy's readers did not share a snapshot under BACKUP STAGE"
    # Progress as an operator sees it: per table in `cdcsync status` and /metrics.
    progress() {
      "$CDCSYNC" -c "$WORK/cdcsync.conf" status >"$WORK/status.out" 2>&1 &&
        grep -Eq '^snap snapshot test\.big: [0-9]+ of ~[0-9]+ rows, [0-9]+/[0-9]+ chunks, [0-9]+ rows/s, ETA' "$WORK/status.out" &&
        curl -sf "http://127.0.0.1:$MPORT/metrics" >"$WORK/metrics.out" &&
        grep -Eq '^cdcsync_snapshot_rows_total\{pipeline="snap",table="test.big"\} [1-9]' "$WORK/metrics.out" &&
        grep -Eq '^cdcsync_snapshot_chunks_remaining\{pipeline="snap"\} [1-9]' "$WORK/metrics.out"
    }
    wait_for "snapshot progress in cdcsync status and /metrics" 60 progress
    grep snapshot "$WORK/status.out" >&2
  fi
done
copy_done() { ! copying && grep -q "snapshot of test.nokey: [0-9]* rows" "$WORK/service.log" &&
  grep -q "snapshot of test.big: [0-9]* rows" "$WORK/service.log"; }
wait_for "the copy to end" 120 copy_done
grep -q "snapshot: [0-9]* of [0-9]* chunks, [0-9]* of ~[0-9]* rows, [0-9]* rows/s, ETA" "$WORK/service.log" ||
  fail "no progress line in the log"
touch "$WORK/stop"
wait "${WRITERS[@]}"
my_on src -e "INSERT INTO big VALUES (-1000000, -1, 'after the writers')"

dump() { # SERVER TABLE ORDER
  my_on "$1" -e "SELECT * FROM $2 ORDER BY $3" | md5sum
}
synced() {
  [ "$(dump src big id)" = "$(dump dst big id)" ] &&
    [ "$(dump src nokey 'w, seq, payload')" = "$(dump dst nokey 'w, seq, payload')" ]
}
wait_for "both tables equal to the source" 90 synced
log "equal: big $(my_on src -e 'SELECT count(*) FROM big') rows, nokey $(my_on src -e 'SELECT count(*) FROM nokey') rows"
[ "$(my_on dst -e "SELECT count(*) FROM cdcsync.tables WHERE state IN ('copying', 'chunk')")" = 0 ] ||
  fail "chunk records were left behind"
service_stop
finish
