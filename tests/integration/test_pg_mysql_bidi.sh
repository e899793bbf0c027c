#!/usr/bin/env bash
# Bidirectional PostgreSQL ↔ MariaDB without loops: pipelines p2m and m2p in one service while
# applications write to both sides (different keys: inserts, updates, deletes) and the service is
# killed with SIGKILL and restarted several times. Both sides must end with equal ordered
# contents over columns of several types, each side's echoes must be recognised by the mark the
# other pipeline's sink left (MariaDB: the sink connector's server_id; PostgreSQL: the replication
# origin cdcsync_<pipeline>) and dropped, and once the applications stop, the event counters of
# both pipelines must stand still.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bidi_lib.sh"
source "$(dirname "$0")/mylib.sh"
export PGTZ=UTC

pg_start p
my_start m 1
MPORT=$(free_port)
MY_SID=9002 # the cdcsync connector's server_id: its binlog client and its sink's session mark

# Types both sides hold exactly: boolean ↔ TINYINT(1) (0/1), bytea ↔ BLOB, numeric ↔ DECIMAL.
psql_on p <<'SQL'
CREATE TABLE acc (id int PRIMARY KEY, bi bigint NOT NULL, amount numeric(20,6), label text,
  code varchar(40), at timestamp(6), flag boolean, blob bytea);
CREATE TABLE note (id bigint PRIMARY KEY, body text);
SQL
my_on m <<'SQL'
CREATE TABLE acc (id INT PRIMARY KEY, bi BIGINT NOT NULL, amount DECIMAL(20,6), label TEXT,
  code VARCHAR(40), at DATETIME(6), flag TINYINT(1), `blob` BLOB) DEFAULT CHARSET=utf8mb4;
CREATE TABLE note (id BIGINT PRIMARY KEY, body TEXT) DEFAULT CHARSET=utf8mb4;
SQL

write_conf "$WORK/cdcsync.conf" "127.0.0.1:$MPORT" debug <<CONF
[connector.pg]
type = postgres
dsn = $(pg_dsn p)

[connector.my]
$(my_connector m $MY_SID)

[pipeline.p2m]
source = pg
sink = my
tables = public.acc, public.note
map = public.* -> test.*

[pipeline.m2p]
source = my
sink = pg
tables = test.acc, test.note
map = test.* -> public.*
CONF
"$CDCSYNC" -c "$WORK/cdcsync.conf" check >"$WORK/check.out" || fail "check failed: $(cat "$WORK/check.out")"

# PostgreSQL's application owns acc ids 1..2000 and odd notes; MariaDB's 100001..102000 and even
# notes. Both upsert (bi counts the updates), delete a neighbour now and then, add a note.
cat >"$WORK/work_p.sql" <<'SQL'
\set id random(1, 2000)
BEGIN;
INSERT INTO acc VALUES (:id, :id::bigint * 1000000000000, round((random() * 1e9)::numeric, 6),
  md5(random()::text) || E'\tü✓\n', CASE WHEN random() < 0.2 THEN NULL ELSE 'pg' || (random() * 1000)::int END,
  now()::timestamp(6), random() < 0.5, decode(md5(random()::text), 'hex'))
  ON CONFLICT (id) DO UPDATE SET bi = acc.bi + 1, amount = excluded.amount, label = excluded.label,
  code = excluded.code, at = excluded.at, flag = NOT acc.flag, blob = excluded.blob;
DELETE FROM acc WHERE id = :id + 3 AND bi % 4 = 0;
INSERT INTO note VALUES (2 * (:id::bigint * 100000 + (random() * 99999)::int) + 1, 'pg') ON CONFLICT DO NOTHING;
COMMIT;
SQL
cat >"$WORK/work_m.sql" <<'SQL'
SET @id = 100001 + FLOOR(RAND() * 2000);
BEGIN;
INSERT INTO acc VALUES (@id, @id * 1000000000000, ROUND(RAND() * 1e9, 6), CONCAT(MD5(RAND()), '\tü✓\n'),
  IF(RAND() < 0.2, NULL, CONCAT('my', FLOOR(RAND() * 1000))), NOW(6), RAND() < 0.5, UNHEX(MD5(RAND())))
  ON DUPLICATE KEY UPDATE bi = bi + 1, amount = VALUES(amount), label = VALUES(label), code = VALUES(code),
  at = VALUES(at), flag = NOT flag, `blob` = VALUES(`blob`);
DELETE FROM acc WHERE id = @id + 3 AND bi % 4 = 0;
INSERT IGNORE INTO note VALUES (2 * (@id * 100000 + FLOOR(RAND() * 99999)), 'my');
COMMIT;
SQL

w() { printf "coalesce('v:' || (%s), 'null')" "$1"; }
m() { printf "IFNULL(CONCAT('v:', %s), 'null')" "$1"; }
PG_ACC="concat_ws(E'\t', $(w id), $(w bi), $(w amount), $(w "encode(convert_to(label, 'UTF8'), 'hex')"),
  $(w "encode(convert_to(code, 'UTF8'), 'hex')"), $(w at), $(w flag::int), $(w "encode(blob, 'hex')"))"
MY_ACC="CONCAT_WS(CHAR(9), $(m id), $(m bi), $(m amount), $(m "HEX(label)"), $(m "HEX(code)"), $(m at), $(m flag),
  $(m "HEX(\`blob\`)"))"
PG_NOTE="concat_ws(E'\t', $(w id), $(w "encode(convert_to(body, 'UTF8'), 'hex')"))"
MY_NOTE="CONCAT_WS(CHAR(9), $(m id), $(m "HEX(body)"))"
synced() {
  my_on m -e "SELECT $MY_ACC FROM acc ORDER BY id" >"$WORK/my.acc" &&
    psql_on p -F $'\t' -c "SELECT $PG_ACC FROM acc ORDER BY id" >"$WORK/pg.acc" &&
    rows_equal ssnuutsx "$WORK/pg.acc" "$WORK/my.acc" &&
    my_on m -e "SELECT $MY_NOTE FROM note ORDER BY id" >"$WORK/my.note" &&
    psql_on p -F $'\t' -c "SELECT $PG_NOTE FROM note ORDER BY id" >"$WORK/pg.note" &&
    rows_equal su "$WORK/pg.note" "$WORK/my.note"
}

WRITE_SECS=${WRITE_SECS:-20}
service_start
wait_for "both pipelines streaming" 60 streaming
pgbench -n -h "$PG_p_DIR" -p "$PG_p_PORT" -U postgres -c 2 -j 1 -T "$WRITE_SECS" -R 120 -f "$WORK/work_p.sql" \
  postgres >"$WORK/pgbench.log" 2>&1 &
pg_pid=$!
my_repeat m "$WRITE_SECS" 120 "$WORK/work_m.sql" 2>"$WORK/my_work.log" &
my_pid=$!

kill9_during 2.0 3.5 "$pg_pid" "$my_pid"
wait "$pg_pid" || fail "pgbench failed: $(tail -3 "$WORK/pgbench.log")"
wait "$my_pid" || fail "the MariaDB workload failed: $(tail -3 "$WORK/my_work.log")"
[ $kills -ge 3 ] || fail "only $kills kills happened during the workload"
log "$kills kills; MariaDB workload: $(tail -1 "$WORK/my_work.log") transactions sent, $(grep -c '^ERROR' "$WORK/my_work.log" || true) errors"

wait_for "both pipelines streaming" 60 streaming
wait_for "both sides equal" ${SYNC_WAIT:-120} synced
log "equal: $(tr '\n' ' ' <"$WORK/wait.out")"
sleep 2
e1=$(metric_sum cdcsync_events_total p2m)/$(metric_sum cdcsync_events_total m2p)
t1=$(metric_sum cdcsync_transactions_total p2m)/$(metric_sum cdcsync_transactions_total m2p)
sleep 5
e2=$(metric_sum cdcsync_events_total p2m)/$(metric_sum cdcsync_events_total m2p)
t2=$(metric_sum cdcsync_transactions_total p2m)/$(metric_sum cdcsync_transactions_total m2p)
log "events p2m/m2p since the last start: $e1 then $e2; transactions: $t1 then $t2"
[ "$e1" = "$e2" ] && [ "$t1" = "$t2" ] || fail "counters still move after the writes stopped: a loop"
synced >"$WORK/final.out" || fail "the sides drifted apart after settling: $(cat "$WORK/final.out")"

# Each side writes its own keys: nothing is concurrent, so nothing is a conflict (kills included).
c=$(metric_sum cdcsync_conflicts_total p2m)/$(metric_sum cdcsync_conflicts_total m2p)
[ "$c" = "0/0" ] && [ ! -s "$WORK/state/conflicts.jsonl" ] ||
  fail "conflicts where each side wrote its own keys (p2m/m2p since the last start): $c; $(head -c 600 "$WORK/state/conflicts.jsonl" 2>/dev/null)"

# Both sides' rows crossed over, and enough of them to mean something.
n_pg=$(psql_on p -c "SELECT count(*) FROM acc WHERE id > 100000")
n_my=$(my_on m -e "SELECT count(*) FROM acc WHERE id <= 2000")
log "acc rows: $(wc -l <"$WORK/pg.acc"), of which MariaDB's on PostgreSQL: $n_pg, PostgreSQL's on MariaDB: $n_my"
[ "$n_pg" -gt 100 ] && [ "$n_my" -gt 100 ] || fail "too few rows crossed: $n_pg and $n_my"
[ "$(psql_on p -c "SELECT count(*) FROM acc WHERE flag AND id > 100000")" -gt 0 ] || fail "no true flag crossed from MariaDB"

# Echoes: each pipeline dropped the other's writes, recognised by the mark of that other sink.
grep -q "pipeline=p2m.*dropped echo transaction .*(origin cdcsync_m2p" "$WORK/service.log" ||
  fail "p2m dropped no echo of m2p (replication origin cdcsync_m2p)"
grep -q "pipeline=m2p.*dropped echo transaction .*(origin $MY_SID" "$WORK/service.log" ||
  fail "m2p dropped no echo of p2m (server_id $MY_SID)"
# and nothing the applications wrote was taken for an echo
if grep "dropped echo transaction" "$WORK/service.log" | grep -v "origin cdcsync_m2p\|origin $MY_SID," >"$WORK/bad_echo"; then
  fail "transactions dropped as echoes with other origins: $(head -3 "$WORK/bad_echo")"
fi
service_stop
finish
